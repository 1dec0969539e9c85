"""The steps: each module is what one rule runs (`python -m workflow_scripts.steps.<module>`). Steps
import the library (workflow_scripts.lib), never each other."""
