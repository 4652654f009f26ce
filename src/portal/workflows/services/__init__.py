"""Writes for merge and deletion requests, one module per kind (``merges``,
``deletions``) over the transitions they share (``transitions``)."""
