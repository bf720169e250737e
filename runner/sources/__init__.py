"""Where a model or adapter lives: the rules over its name (`names`), what a local folder
holds (`folders`), and where it is loaded from, the hub included (`hub`)."""
