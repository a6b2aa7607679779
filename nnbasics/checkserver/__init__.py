"""The check server: one warm process that checks many Functions, so that ``python -m nnbasics.check FILE.py:NAME``
does not pay for importing torch, Dynamo and AOTAutograd on every run (as Gradle's daemon, Bazel's server and
``dmypy`` keep a warm process between command lines; ``docs/checker.md``, "How long it takes").

- ``client``: what ``python -m nnbasics.check`` (and ``nnbasics-check``) runs first; it imports no torch. It finds
  the server for its key, starts one if there is none, passes its cwd, argv, environment, ``sys.path`` and its
  stdin/stdout/stderr (the file descriptors themselves, over the Unix socket) and waits for the exit status,
  forwarding Ctrl-C. Where no server can serve, the command runs in the client's own process.
- ``server``: the warm process. It has imported torch, nnbasics, ``torch._dynamo`` and ``functorch.compile`` and
  checked one of nnbasics' ops; for each request it forks a child that takes the client's state and runs
  the command line's own code (``nnbasics.testing.command``), loading the user's module fresh.
- ``common``: what both share: where the sockets live, the key a server must match, the messages.
"""
