"""The browser chat (`aegis ui`): the Chainlit app (``app``, the module `chainlit run` loads), what a tab shows
(``views``), what a person reads (``presenters``), whose approval is whose (``pending``), and who may connect
(``access``, ``guard``). Only ``app`` and ``views`` import Chainlit."""
