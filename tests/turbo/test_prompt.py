from lofi_daemon.turbo import prompt, vocab


def test_caption_text_with_no_metadata_is_upstreams_template() -> None:
    metas = prompt.metas_text(30.0)
    assert metas == ("- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 30 seconds\n")
    assert prompt.caption_text("lofi hip hop, mellow piano", metas) == (
        "# Instruction\n"
        "Fill the audio semantic mask based on the given conditions:\n"
        "\n"
        "# Caption\n"
        "lofi hip hop, mellow piano\n"
        "\n"
        "# Metas\n"
        "- bpm: N/A\n"
        "- timesignature: N/A\n"
        "- keyscale: N/A\n"
        "- duration: 30 seconds\n"
        "<|endoftext|>\n"
    )


def test_metas_with_every_value_and_a_fractional_duration() -> None:
    assert prompt.metas_text(12.9, bpm=84, time_signature=4, keyscale="F# minor") == (
        "- bpm: 84\n- timesignature: 4\n- keyscale: F# minor\n- duration: 12 seconds\n"
    )


def test_instruction_gets_a_colon() -> None:
    text = prompt.caption_text("x", "m", instruction="Do it")
    assert text.startswith("# Instruction\nDo it:\n\n# Caption\nx\n")


def test_lyric_text_defaults_to_instrumental_and_unknown_language() -> None:
    expected = "# Languages\nunknown\n\n# Lyric\n[Instrumental]<|endoftext|>"
    assert prompt.lyric_text() == expected
    assert prompt.lyric_text("  \n", None) == expected


def test_lyric_text_with_words_has_no_trailing_newline() -> None:
    assert prompt.lyric_text("[verse]\nla la", "en") == (
        "# Languages\nen\n\n# Lyric\n[verse]\nla la<|endoftext|>"
    )


def test_vocabularies_match_upstream_sizes() -> None:
    assert len(vocab.VALID_KEYSCALES) == len(set(vocab.VALID_KEYSCALES)) == 70
    assert {"C major", "F# minor", "B♭ major", "Eb minor"} <= set(vocab.VALID_KEYSCALES)
    assert len(vocab.VALID_LANGUAGES) == len(set(vocab.VALID_LANGUAGES)) == 51
    assert vocab.VALID_LANGUAGES[-1] == "unknown"
    assert vocab.VALID_TIME_SIGNATURES == (2, 3, 4, 6)
    assert (vocab.BPM_MIN, vocab.BPM_MAX) == (30, 300)
