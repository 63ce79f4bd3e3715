"""The folder `workbench exec` puts first on the child's PYTHONPATH: it holds only sitecustomize.py.

A package (this file) so that a wheel ships the folder; Python itself never imports it as one.
"""
