"""The Discord side: the adapter (adapter.py), the slash command tree (tree.py) and how its
commands are answered (answers.py), embeds and choices (render.py), deliberate command sync
(sync.py) and the guard against Discord's invalid-request ban (guard.py)."""
