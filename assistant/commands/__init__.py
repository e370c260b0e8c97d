"""One module per `tutti` command group; each exposes `register(subparsers)`."""
