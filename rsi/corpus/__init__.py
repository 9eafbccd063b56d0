"""The preference corpus: ids, Arrow schemas, atomic Parquet writes."""
