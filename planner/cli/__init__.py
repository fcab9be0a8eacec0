"""The command line: the Typer app (planner.cli.main) and one thin module per group of
commands, each parsing its options, calling one library function and printing the result."""
