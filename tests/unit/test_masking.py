"""The one masker: what a secret looks like wherever it has to be shown, and what is left of provider texts."""

from zerver.lib.delivery import SendError
from zerver.lib.masking import mask, scrub
from zerver.lib.push.common import PushResult


def test_mask_shows_a_prefix_and_the_length_only():
    token = "ab" * 32
    assert mask(token) == "abab…(64)"
    assert mask("ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]") == "Expo…(41)"
    assert mask("short") == "…(5)"
    assert mask("") == "-"


def test_scrub_removes_tokens_and_url_passwords_from_provider_texts():
    expo = "ExponentPushToken[device-1234567]"
    apns = "0123456789abcdef" * 4
    fcm = "fcm-0001:" + "A" * 140
    text = (
        f'"{expo}" is not a registered push notification recipient; apns {apns}; fcm {fcm}; '
        "broker amqp://notify:s3cretpass@rabbit:5672/"
    )
    cleaned = scrub(text)
    for secret in (expo, "device-1234567", apns, fcm, "s3cretpass"):
        assert secret not in cleaned
    assert "is not a registered push notification recipient" in cleaned
    assert "amqp://notify:***@rabbit:5672/" in cleaned


def test_scrub_masks_the_configured_secrets(settings):
    settings.SMS_AUTH_TOKEN = "twilio-auth-token-value"
    assert "twilio-auth-token-value" not in scrub("401 bad credentials twilio-auth-token-value")


def test_push_results_and_send_errors_carry_scrubbed_texts():
    expo = "ExponentPushToken[dead-device-42]"
    result = PushResult("expired", f'DeviceNotRegistered: "{expo}" is not a registered push notification recipient')
    assert expo not in result.error and result.error.startswith("DeviceNotRegistered")
    assert expo not in str(SendError(f"rejected {expo}", transient=False))
