"""Study specs that ship with the toolkit (``studies/`` at the top of the repo links here)."""
