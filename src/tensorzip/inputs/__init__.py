"""tensorzip.inputs"""
