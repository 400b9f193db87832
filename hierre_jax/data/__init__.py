"""Data: HierarCaps CSV files, packing of texts into rows, distinct-item indexing."""
