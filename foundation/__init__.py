"""Payment-entity foundation model framework.

The flow (see docs/architecture.md): raw events -> schema -> validation -> per-entity sequences ->
EventTokenizer -> FoundationModel pretraining -> embeddings -> heads -> evaluation -> serving.
"""

__version__ = "0.1.0"
