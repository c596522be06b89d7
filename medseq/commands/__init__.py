"""One module per CLI command.

Each module imports only the standard library, typer and light medseq modules at top level, and
imports heavy packages (torch, monai, SimpleITK) inside the command body, so that loading the CLI
stays fast.
"""
