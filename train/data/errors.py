"""The one error every dataset raises for missing or malformed data."""


class DatasetError(FileNotFoundError):
    """A dataset is missing or malformed; the message says what is missing and what to do."""
