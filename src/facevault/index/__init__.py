from .base import VectorIndex
from .faiss_index import FaissIndex

__all__ = ["FaissIndex", "VectorIndex"]
