"""The standard battery (`workbench check`): named scenarios thrown at any pipeline, judged per property.

Pure core: scenarios (what is published), model (what a check gathered), scorecard (properties judged from it),
junit and html (the forms people consume). The orchestration, which needs the stack, lives in workbench.check_run.
"""
