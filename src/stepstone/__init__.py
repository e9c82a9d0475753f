"""stepstone: parameter-efficient intermediate-task transfer for zero-shot cross-lingual NLP."""
__version__ = "0.1.0"
