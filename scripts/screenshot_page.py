"""Screenshot of a two-turn conversation on the page, against a running server (for the README).

    llm-twin serve &            # the demo store and the default model (make demo)
    python scripts/screenshot_page.py --out docs/page.png

Drives Debian's chromium through Playwright (``pip install -e '.[test]'``; no ``playwright install``).
The second question is a follow-up: it names nobody, so the author carries over from the first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

FIRST = "What did Guido van Rossum write about pattern matching?"
FOLLOW_UP = "Why did he prefer it to a switch statement?"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=Path("docs/page.png"), help="the PNG to write (default: %(default)s)"
    )
    parser.add_argument("--question", default=FIRST)
    parser.add_argument("--follow-up", default=FOLLOW_UP)
    parser.add_argument("--author", default="", help="choose this author in the picker (default: none)")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--dark", action="store_true", help="dark colour scheme")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per answer (default: %(default)s)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": args.width, "height": 900}, color_scheme="dark" if args.dark else "light"
            )
            page.set_default_timeout(args.timeout * 1000)
            page.goto(args.url.rstrip("/") + "/")
            if page.locator(".turn").count():
                page.click("#new-conversation")
            if args.author:
                page.fill("#author", args.author)
            for turn, question in enumerate((args.question, args.follow_up)):
                started = time.monotonic()
                page.fill("#query", question)
                page.click("#submit")
                page.wait_for_function(
                    f"() => document.querySelector('#turn-{turn} .turn-error') ||"
                    f" /Answered in|Stopped/.test(document.getElementById('status-{turn}')?.textContent || '')"
                )
                error = page.locator(f"#turn-{turn} .turn-error")
                if error.count():
                    print(f"turn {turn + 1} failed: {error.inner_text()}", file=sys.stderr)
                    return 1
                print(f"turn {turn + 1}: {time.monotonic() - started:.1f} s", file=sys.stderr)
            page.click("#turn-1 details.about summary")  # show what the follow-up was searched as
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            print(f"wrote {args.out}", file=sys.stderr)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
