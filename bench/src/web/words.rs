//! Word lists of the generated texts and names.

use std::sync::LazyLock;

/// Words of support messages, roughly by how often they occur: [`zipf_word`] draws rank r with
/// probability about 1 / r, so the first ones are in most messages and the last in very few.
pub(crate) static WORDS: LazyLock<Vec<&str>> =
    LazyLock::new(|| WORDS_TEXT.split_whitespace().collect());
pub(crate) static FIRST_NAMES: LazyLock<Vec<&str>> =
    LazyLock::new(|| FIRST_NAMES_TEXT.split_whitespace().collect());
pub(crate) static LAST_NAMES: LazyLock<Vec<&str>> =
    LazyLock::new(|| LAST_NAMES_TEXT.split_whitespace().collect());

pub(crate) const WORDS_TEXT: &str = "\
     the my order i to and is a it not please for you delivery of have refund on was with this \
     can payment account when package still help tracking invoice but we received your be did \
     shipping today thanks return number been card email need password app wrong item address \
     cancel subscription charged days after week since working login there update problem again \
     could would size replacement exchange store website checkout error message price discount \
     code coupon voucher missing late damaged broken parcel courier label receipt stock available \
     colour screen battery charger cable phone laptop headphones warranty repair status \
     confirmation reset locked twice bank transfer paypal credit debit plan upgrade downgrade \
     premium trial renewal expired manager complaint feedback review urgent asap weekend monday \
     friday morning evening tomorrow yesterday customer service support agent chat call ticket \
     reference photo attached picture scratch dent leaking smell noise crash freezes slow \
     notification download install version android iphone browser cookie captcha verification sms \
     two-factor profile settings language currency tax vat customs duty import international \
     express standard pickup locker neighbour doorstep signature driver warehouse dispatch \
     backorder preorder restock gift wrapping bundle promotion newsletter unsubscribe privacy \
     gdpr delete data export invoice-address company business bulk wholesale quote contract terms \
     policy loyalty points membership referral balance installment klarna overdue reminder fee \
     penalty chargeback dispute fraud suspicious hacked compromised ombudsman lawyer escalate \
     escalation compensation goodwill apology disappointed frustrated unacceptable excellent \
     amazing recommend stars trustpilot warrantied firmware bluetooth pairing adapter voltage \
     fuse socket hinge zipper stitching fabric shrunk faded allergic ingredients expiry mould \
     fragile shattered pallet freight tachograph affidavit";

pub(crate) const FIRST_NAMES_TEXT: &str = "\
     Ada Ben Chloé Dmitri Emma Farid Grace Hiro Ines Jonas Kemi Lena Mateo Nora Omar Priya \
     Quentin Rosa Sven Tariq Uma Viktor Wen Ximena Yusuf Zoë";

pub(crate) const LAST_NAMES_TEXT: &str = "\
     Lovelace Okafor Müller Ivanova Rossi Haddad Hopper Tanaka García Berg Adeyemi Novak Silva \
     Jensen Khan Patel Dubois Costa Lind Aziz Nair Petrov Chen López Demir Schulz";
