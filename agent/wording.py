"""App strings that the demo persona (fakeclaude.persona) must recognise: defined once, here, in a module
with no imports so the persona can read them without loading the product."""

SUMMARY_REQUEST = "Summarise the following conversation"  # how agent/compress.py opens its summary prompt
SUPERSEDED = "user sent a new message instead"  # why a call was closed unrun: the user typed something else
