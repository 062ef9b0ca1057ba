"""The demo persona: Tollgate's offline demo model, on top of the wire-level fake (fakeclaude).

It understands the app's starter prompts and tools, obeys injected instructions (the worst case, so the
approval gate can be watched stopping them) and summarises transcripts for the app's compression, using
the app's own summary prompt (agent/compress.py), not a copy.
"""

from .demo_brain import HELP_TEXT, DemoBrain
from .intents import find_injected_goal

__all__ = ["HELP_TEXT", "DemoBrain", "find_injected_goal"]
