"""Locust version of `loadtest`: each user posts a random case from the
traffic.json next to this file (or a batch of them) to /cases.

    locust -f loadtest/traffic.py --headless --users 50 --spawn-rate 10 \
        --run-time 10s --host http://127.0.0.1:8081 [--batch 10] [--csv run]

Set LOADTEST_TOKEN to send `Authorization: Bearer <token>`.
"""

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, events, task

CASES = json.loads(Path(__file__).with_name("traffic.json").read_text(encoding="utf-8"))


@events.init_command_line_parser.add_listener
def _(parser):
    parser.add_argument("--batch", type=int, default=0, help="cases per request, sent as a JSON array (0: one case object)")


class CaseReporter(FastHttpUser):
    def on_start(self):
        token = os.environ.get("LOADTEST_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.batch = self.environment.parsed_options.batch

    @task
    def post_cases(self):
        body = random.choices(CASES, k=self.batch) if self.batch else random.choice(CASES)
        self.client.post("/cases", json=body, headers=self.headers)
