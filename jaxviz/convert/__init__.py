"""Converters from other frameworks' weight files to jaxviz parameters."""
