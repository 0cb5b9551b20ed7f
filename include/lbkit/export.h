// LBKIT_EXPORT marks lbkit's public API: the classes and functions of
// include/lbkit/. liblbkit.so is built with hidden visibility
// (-fvisibility=hidden), so only what carries this mark is exported; every
// other symbol (lbkit::internal, the generated protobuf and etcd code) stays
// inside the library and can change between releases without breaking a
// program linked against it.
//
// On a class, the mark exports its out-of-line members, its vtable and its
// typeinfo: needed for any class a user subclasses, calls virtually, or meets
// through RTTI or an exception. Inline members are not exported
// (-fvisibility-inlines-hidden): each user compiles its own copy.
//
// Users need not define anything: the mark only has an effect when lbkit is
// built. (For a static lbkit it is harmless: visibility matters only when a
// shared object is linked.)
#ifndef LBKIT_EXPORT_H_
#define LBKIT_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define LBKIT_EXPORT __attribute__((visibility("default")))
#else
#define LBKIT_EXPORT
#endif

#endif  // LBKIT_EXPORT_H_
