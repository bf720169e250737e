"""What a person looks at: the report page of a run and the grid of a compare step.

Rendering reads only the run record (runner.record) and Pillow; no model library.
"""
