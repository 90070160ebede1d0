"""``check_expo_receipts --loop`` outlives Expo's errors: it backs off and tries again, it never exits."""

import requests
from django.core.management import call_command

from bouncer.management.commands import check_expo_receipts as command


def test_the_loop_survives_expo_errors_and_backs_off(monkeypatch):
    calls, waits = [], []

    def check() -> int:
        calls.append(1)
        if len(calls) <= 2:
            raise requests.HTTPError("503 Server Error")
        return 0

    class Stop:
        def __init__(self) -> None:
            self.flag = False

        def is_set(self) -> bool:
            return self.flag

        def set(self) -> None:
            self.flag = True

        def wait(self, seconds: float) -> None:
            waits.append(seconds)
            if len(calls) >= 3:
                self.flag = True

    monkeypatch.setattr(command, "check_expo_receipts", check)
    monkeypatch.setattr(command.threading, "Event", Stop)
    monkeypatch.setattr(command.signal, "signal", lambda *args: None)
    call_command("check_expo_receipts", "--loop", "10")

    assert len(calls) == 3
    assert waits == [20, 40, 10]  # doubled after each failure, back to the interval after a success
