"""CLI verbs, one module each: `HELP`, `register(parser)`, `main(args) -> int` (optional `VERB`)."""
