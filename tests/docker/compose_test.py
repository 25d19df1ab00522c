#!/usr/bin/env python3
"""docker-compose (Debian's 1.29, on the Docker SDK for Python) against kilnd: a project with two networks
comes up, its services reach each other by service name, alias and link on the networks they share and not across,
its published port answers, and `down` leaves no container or network behind. Every container is a VM."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from connectivity_test import free_port  # noqa: E402
from container_cli_test import IMAGE, ContainerCase, wait_until  # noqa: E402

COMPOSE = shutil.which("docker-compose")


@unittest.skipIf(COMPOSE is None, "docker-compose is not installed (scripts/install-deps.sh installs it)")
class ComposeTest(ContainerCase):
    def compose(self, *args, check=True, timeout=300):
        done = subprocess.run([COMPOSE, "-p", "kilnproj", *args], cwd=self.project, capture_output=True,
                              env=self.docker_env(), timeout=timeout)
        if check:
            self.assertEqual(done.returncode, 0, done.stdout.decode() + done.stderr.decode() + self.server_log())
        return done.stdout.decode()

    def reaches(self, service, url):
        done = subprocess.run([COMPOSE, "-p", "kilnproj", "exec", "-T", service, "timeout", "10", "wget", "-q",
                               "-O", "-", url], cwd=self.project, capture_output=True, env=self.docker_env(),
                              timeout=60)
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def test_a_project_on_two_networks_comes_up_talks_by_name_and_goes_down(self):
        self.project = tempfile.mkdtemp(prefix="kiln-compose-")
        self.addCleanup(shutil.rmtree, self.project, ignore_errors=True)
        port = free_port()
        serve = 'sh -c "mkdir -p /www && echo {} > /www/index.html && exec httpd -f -p 80 -h /www"'
        with open(os.path.join(self.project, "docker-compose.yml"), "w") as f:
            f.write(textwrap.dedent(f"""\
                version: "3.8"
                services:
                  db:
                    image: {IMAGE}
                    command: {serve.format("db-answer")}
                    networks: [back]
                    stop_grace_period: 1s
                  web:
                    image: {IMAGE}
                    command: {serve.format("web-answer")}
                    networks:
                      front:
                        aliases: [frontdoor]
                      back: {{}}
                    ports: ["127.0.0.1:{port}:80"]
                    links: ["db:database"]
                    stop_grace_period: 1s
                  client:
                    image: {IMAGE}
                    command: sleep 600
                    networks: [front]
                    stop_grace_period: 1s
                networks:
                  front: {{}}
                  back: {{}}
                """))
        self.addCleanup(lambda: self.compose("down", check=False))
        self.compose("up", "-d")
        self.assertEqual(sorted(self.compose("ps", "--services").split()), ["client", "db", "web"])
        wait_until(lambda: self.reaches("web", "http://db/") == "db-answer", "web reaching db by name")
        # A link's alias names the linked service for the linking one alone.
        self.assertEqual(self.reaches("web", "http://database/"), "db-answer")
        self.assertIsNone(self.reaches("db", "http://database/"))
        self.assertEqual(self.reaches("client", "http://frontdoor/"), "web-answer")
        self.assertEqual(self.reaches("client", "http://web/"), "web-answer")
        self.assertEqual(self.reaches("db", "http://web/"), "web-answer")
        self.assertIsNone(self.reaches("client", "http://db/"))  # not on back
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            self.assertEqual(answer.read().decode().strip(), "web-answer")

        self.compose("down")
        self.assertEqual(self.out("ps", "-aq"), "")
        networks = self.out("network", "ls", "--format", "{{.Name}}").split()
        self.assertEqual(sorted(networks), ["bridge", "host", "none"])


if __name__ == "__main__":
    unittest.main()
