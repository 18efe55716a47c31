from descend.cli import entry

entry()
