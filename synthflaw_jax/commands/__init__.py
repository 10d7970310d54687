"""One module per `synthflaw` subcommand: each has HELP, add_arguments(parser) and run(args) -> int."""
