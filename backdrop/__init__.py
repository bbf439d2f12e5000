"""backdrop: train image classifiers that ignore their backgrounds (adversarial backgrounds, METHOD.md).

This is the library; `platform/` is only its command line. Ray workers import `backdrop`,
never `platform` (which shadows the standard-library module of that name).
"""
__version__ = "0.1.0"
