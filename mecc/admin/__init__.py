"""Administration: rule store and publishing, dry-runs, back-tests, audit, services directory, API
keys.
"""
