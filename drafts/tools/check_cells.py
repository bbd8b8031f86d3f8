"""Check MyST chapters: code cells <= 79 columns, first cell is the launch cell,
glue names unique, every glue:text has a glue() call. Usage: python check_cells.py FILES"""
import re
import sys

bad, names, used = 0, {}, {}
for path in sys.argv[1:]:
    text = open(path).read()
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S)
    if not cells or ":load: _launch.py" not in cells[0]:
        print(f"{path}: first cell is not the launch cell")
        bad += 1
    for c in cells:
        for line in c.splitlines():
            if len(line) > 79:
                print(f"{path}: {len(line)} cols: {line[:60]}...")
                bad += 1
    for n in re.findall(r'glue\(\s*f?"([^"]+)"', text):
        names.setdefault(n, []).append(path)
    for n in re.findall(r"\{glue:text\}`([^`:]+)", text):
        used.setdefault(n, []).append(path)
for n, ps in names.items():
    if len(ps) > 1 and "{" not in n:
        print(f"glue {n} defined in {ps}")
        bad += 1
defined = set(names)
for n, ps in used.items():
    if n not in defined and not any("{" in d and re.fullmatch(
            re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(d)), n) for d in defined):
        print(f"glue:text {n} in {ps} has no glue()")
        bad += 1
print("problems:", bad)
