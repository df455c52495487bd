"""Parses a Tiltfile (Starlark, a syntactic subset of Python) and prints, as JSON, what the mesh
tests check: the functions it calls, the names it defines and its string constants.
A syntax error exits non-zero with the message."""
import ast
import json
import sys

source = open(sys.argv[1], encoding="utf-8").read()
tree = ast.parse(source, filename=sys.argv[1])
calls, defined, strings = set(), set(), []


def dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return base + "." + node.attr if base else None
    return None


for node in ast.walk(tree):
    if isinstance(node, ast.Call):
        name = dotted(node.func)
        if name:
            calls.add(name)
        elif isinstance(node.func, ast.Attribute):
            calls.add("<value>." + node.func.attr)
    elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        defined.add(node.id)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        strings.append(node.value)

print(json.dumps({"calls": sorted(calls), "defined": sorted(defined), "strings": strings}))
