"""tensorzip.outputs"""
