"""The error every checkpoint converter raises."""

__all__ = ['ConversionError']


class ConversionError(ValueError):
    """A checkpoint that does not fit the target model (the message names the
    keys, shapes or grids at fault)."""
