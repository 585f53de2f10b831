"""``vop serve``: an HTTP JSON API and a web page over one or more indexes.

One frozen backbone sits in memory; each index is searched with the adapter it was built with
(matched by sha256). Imports nothing from ``vop.train``.
"""
