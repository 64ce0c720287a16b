"""The rule language: a documented CEL subset — syntax, typed nodes, checking and the compiled
closures. Pure.
"""
