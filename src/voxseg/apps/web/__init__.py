"""The voxseg web app (``voxseg web``): upload an image, segment it with a model, download the results.

``app.py`` is the Streamlit page; :mod:`voxseg.apps.web.logic` holds the logic as plain functions
(testable without Streamlit). See ``docs/web.md``.
"""
