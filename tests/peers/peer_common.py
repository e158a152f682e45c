"""What the asyncua peers (ua_client.py, ua_server.py) share: the PKI folder and the
--security POLICY:MODE option."""
import argparse
from pathlib import Path

DEFAULT_PKI = Path(__file__).resolve().parent.parent.parent / ".cache" / "pki"
POLICIES = ("None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep",
            "Aes256_Sha256_RsaPss")
MODES = ("None", "Sign", "SignAndEncrypt")


def parse_security(text: str) -> tuple[str, str]:
    """"POLICY:MODE" -> (policy, mode); None goes only with None."""
    policy, sep, mode = text.partition(":")
    if not sep or policy not in POLICIES or mode not in MODES or (policy == "None") != (mode == "None"):
        raise argparse.ArgumentTypeError(
            f"bad --security {text!r}: POLICY:MODE with POLICY in {', '.join(POLICIES)} and MODE "
            "Sign or SignAndEncrypt (or None:None)")
    return policy, mode
