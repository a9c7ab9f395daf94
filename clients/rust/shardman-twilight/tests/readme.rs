//! The README's example is the example bot, word for word (the doctest compiles it; the harness
//! runs the bot).

#[test]
fn the_readme_example_is_examples_bot_rs_word_for_word() {
    let readme = include_str!("../README.md");
    let bot = include_str!("../examples/bot.rs");
    let example = readme
        .find("## Example")
        .expect("the README's Example section");
    let start = example
        + readme[example..]
            .find("```rust,no_run\n")
            .expect("a rust example in the Example section")
        + "```rust,no_run\n".len();
    let length = readme[start..]
        .find("```\n")
        .expect("the end of the example");
    assert_eq!(&readme[start..start + length], bot);
}
