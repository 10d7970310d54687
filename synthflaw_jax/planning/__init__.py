"""`synthflaw plan`: will a config fit a TPU slice, and how fast might it run?

`runner.run_plan` compiles the real sharded step on fake CPU devices in a child process
(`build.compile_step`), `estimate` holds the analytic counts and the roofline, `hlo` reads
matmul FLOPs and collective bytes from the compiled HLO, `report` formats the result.
"""
