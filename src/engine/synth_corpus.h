/* The text `veil model synth` learns its BPE vocabulary from: plain prose
 * of the kind a chat model sees, with numbers, code and a little non-Latin
 * script so that multi-byte characters get merges too. */
#ifndef VEIL_ENGINE_SYNTH_CORPUS_H
#define VEIL_ENGINE_SYNTH_CORPUS_H
static const char synth_corpus[] =
    "The quick brown fox jumps over the lazy dog. A private model runs inside a trusted execution environment, "
    "and the user can check what code holds their data before they send a single word.\n"
    "Hello! How can I help you today? I would like to know how the weather will be tomorrow in the city.\n"
    "Sure, here is a short answer: the attestation report binds the signing key to the hardware, and the "
    "client verifies the quote, the certificate chain and the measurements of the enclave.\n"
    "What is the capital of France? The capital of France is Paris. What is the capital of Germany? It is Berlin.\n"
    "Please write a poem about the sea. The sea is wide and deep and blue; the waves come in, the waves go out.\n"
    "Encryption keeps the prompt secret: only the enclave that holds the private key can read it, and the "
    "answer is encrypted back to the user's own key, chunk by chunk, as it is generated.\n"
    "In 2024 there were 365 days plus one, so 366 in all; 12 months, 52 weeks and 8784 hours.\n"
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(i * i)\n"
    "int main(void) { printf(\"hello, world\\n\"); return 0; }\n"
    "I think the answer is yes, but let me think about it again. First, we consider the question; then we "
    "reason step by step, and finally we give the answer that we believe is correct.\n"
    "Thank you very much! You're welcome. Don't worry, it's fine; we'll see, they've said, I'm here.\n"
    "Les modèles privés protègent les données. Die Daten bleiben geschützt. ¿Dónde está la biblioteca?\n"
    "私はデータを守ります。这是一个测试。Привет, как дела? Γειά σου κόσμε. 🙂 👍\n"
    "The model reads every weight once for each token it writes, so memory bandwidth sets the speed of decoding, "
    "while the prompt is processed as a batch of many tokens at once.\n"
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 2.71828 42 -7 1e6 0x1F.\n"
    "Questions and answers, requests and responses, keys and signatures, models and tokens, users and servers.\n";
#endif
