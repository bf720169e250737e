"""Running a typed spec: the interpreter walks its steps through a backend and records them."""
