"""`synthflaw demo`: the tool end to end on the embedded tiny default."""
