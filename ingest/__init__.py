"""Ingestion: readers, chunking, embedding and the vector-store adapter."""
