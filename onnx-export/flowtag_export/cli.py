"""`flowtag-export`: bundles from the command line.

    flowtag-export keygen --private models.key --public models.pub
    flowtag-export sign BUNDLE_DIR --key models.key
    flowtag-export verify BUNDLE_DIR --public-key models.pub
    flowtag-export inspect BUNDLE
    flowtag-export tar BUNDLE_DIR OUT.tar
    flowtag-export fixtures --out plugin/tests/fixtures
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flowtag-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="create an Ed25519 key pair (PEM)")
    k.add_argument("--private", required=True)
    k.add_argument("--public", required=True)
    s = sub.add_parser("sign", help="sign a bundle directory's manifest")
    s.add_argument("bundle")
    s.add_argument("--key", required=True, help="private key (PEM)")
    v = sub.add_parser("verify", help="check a bundle's signature")
    v.add_argument("bundle")
    v.add_argument("--public-key", required=True)
    i = sub.add_parser("inspect", help="print a bundle's manifest summary")
    i.add_argument("bundle")
    t = sub.add_parser("tar", help="pack a bundle directory into a .tar")
    t.add_argument("bundle")
    t.add_argument("out")
    f = sub.add_parser("fixtures", help="write the plugin's golden fixtures")
    f.add_argument("--out", required=True)
    a = p.parse_args(argv)

    if a.cmd == "keygen":
        from .signing import keygen

        keygen(a.private, a.public)
        print(f"wrote {a.private} (keep it secret) and {a.public}")
    elif a.cmd == "sign":
        from .signing import sign

        print(f"wrote {sign(a.bundle, a.key)}")
    elif a.cmd == "verify":
        from .signing import verify

        try:
            verify(a.bundle, a.public_key)
        except ValueError as e:
            print(f"refused: {e}", file=sys.stderr)
            return 1
        print("signature ok")
    elif a.cmd == "inspect":
        from .bundle import read

        m = read(a.bundle).manifest
        summary = {k: m.get(k) for k in ("name", "version", "kind", "schema", "created", "threshold", "model_sha256")}
        summary["features"] = [f["name"] for f in m["features"]]
        summary["metrics"] = m.get("metrics")
        print(json.dumps(summary, indent=2))
    elif a.cmd == "tar":
        from .bundle import to_tar

        print(f"wrote {to_tar(a.bundle, a.out)}")
    elif a.cmd == "fixtures":
        from .golden import write_fixtures

        write_fixtures(a.out)
        print(f"wrote fixtures to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
