//! The fault framer on any byte stream: never panics, never loses or invents bytes (what it
//! forwards, withholds and still holds adds up to what it was fed), whatever the faults decide.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_codec::status::StatusCode;
use uatap_proxy::fault::{MessageFramer, Verdict};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let mut f = MessageFramer::default();
    let (mut out, mut withheld) = (Vec::new(), Vec::new());
    let mut n = 0u32;
    let mut stopped = false;
    // Feed in pieces whose sizes come from the control byte; toggle holding between pieces.
    let step = usize::from(control % 61) + 1;
    for (i, piece) in stream.chunks(step).enumerate() {
        f.set_hold((control >> (i % 8)) & 1 == 1);
        let stop = f.push(piece, &mut out, &mut withheld, &mut |_| {
            n = n.wrapping_add(1);
            match (u32::from(control) + n) % 7 {
                0 => Verdict::Drop { fault: 1 },
                1 if control & 0x80 != 0 => Verdict::Reply {
                    fault: 2,
                    status: StatusCode(0x807D_0000),
                },
                2 if control & 0x40 != 0 => Verdict::ForwardThenKill {
                    fault: 3,
                    reset: false,
                },
                _ => Verdict::Forward,
            }
        });
        if stop.is_some() {
            stopped = true;
            break;
        }
    }
    if !stopped {
        f.finish(&mut out);
        assert_eq!(out.len() + withheld.len(), stream.len());
    }
});
