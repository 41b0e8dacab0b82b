"""Write a copy of a CloudFormation/SAM template with some parameter defaults replaced.

    python tools/template-with-defaults.py template.yaml OUT.json Name=Value [Name=Value ...]

Used by `make check-template` to lint the template as it deploys with a given parameter
set (e.g. with JwtIssuer/JwtAudience set), since `sam validate --lint` takes no parameter
values. Runs with the SAM venv's Python: cfn-lint's loader understands the short-form
intrinsic tags (!Ref, !If, ...) and the JSON it writes is a valid template.
"""

import json
import sys

from cfnlint.decode import decode


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, target, *assignments = argv
    template, matches = decode(source)
    if matches or template is None:
        for match in matches:
            print(match, file=sys.stderr)
        return 1
    parameters = template.get("Parameters", {})
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or name not in parameters:
            print(f"{source}: no parameter {name!r} (expected Name=Value)", file=sys.stderr)
            return 2
        parameters[name]["Default"] = value
    with open(target, "w", encoding="utf-8") as out:
        json.dump(template, out, indent=1)
        out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
