"""The install also bundles livekit-client for the demo page at `/` (gateway/demo_page) and the browser test
page (tests/browser/page): `npm ci` (when package-lock.json changed) and `npm run build` (esbuild), run by
build_py, so `pip install -e .` builds them (and so does a wheel build). Without npm the install goes on
without them and the demo page says how to build its script."""

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def bundle_pages() -> None:
    npm = shutil.which("npm")
    if npm is None:
        print(
            "raysfu: npm not found: the demo page's script (livekit-client) is not built; "
            "install Node.js and npm, then run the install again",
            file=sys.stderr,
        )
        return
    installed = ROOT / "node_modules" / ".package-lock.json"
    lock = ROOT / "package-lock.json"
    # npm ci wipes node_modules: only when the lock file changed since the last install.
    if not installed.exists() or lock.stat().st_mtime > installed.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)
    subprocess.run([npm, "run", "-s", "build"], cwd=ROOT, check=True)


class BuildPy(build_py):
    def run(self) -> None:
        bundle_pages()
        super().run()


setup(cmdclass={"build_py": BuildPy})
