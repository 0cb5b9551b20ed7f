#!/usr/bin/env bash
# liblbkit.so exports lbkit's public API and nothing of its insides: no
# lbkit::internal symbol, none of the generated protobuf/etcd/ORCA code, no
# strong symbol outside namespace lbkit. (Weak instantiations of standard
# library templates, which every user's object file may also emit, are
# allowed: they are not lbkit's API and the dynamic linker merges them.)
# Usage: shared_library_exports.sh <liblbkit.so> <source dir>
set -euo pipefail
lib=$1
source_dir=$2
syms=$(mktemp)
trap 'rm -f "$syms"' EXIT
# "<type> <demangled name>", one a line.
# ([abi:cxx11] tags dropped: "lbkit::EndpointKey[abi:cxx11](...)".)
nm -D --defined-only -C "$lib" | cut -d' ' -f2- | sed 's/\[abi:cxx11\]//g' >"$syms"
fail=0

# Symbols that belong to lbkit's insides or to generated code.
if grep -E '^[A-Za-z] (((typeinfo|typeinfo name|vtable|VTT|guard variable) for )?(lbkit::internal::|google::protobuf::|etcdserverpb::|mvccpb::|authpb::|xds::|lbkit_gen)|.*descriptor_table)' "$syms"; then
  echo "FAIL: internal or generated symbols above are exported"; fail=1
fi
# Strong definitions (functions T, data D/B/R) must be lbkit's public ones.
if grep -E '^[TDBR] ' "$syms" | grep -Ev '^[TDBR] ((typeinfo|typeinfo name|vtable|VTT) for )?lbkit::'; then
  echo "FAIL: strong symbols above are outside namespace lbkit"; fail=1
fi
# Weak ones: lbkit's classes (inline members, typeinfo) or std templates.
if grep -E '^[WVu] ' "$syms" |
   grep -Ev '^[WVu] (((typeinfo|typeinfo name|vtable|VTT|guard variable) for )?(lbkit::|std::|__gnu_cxx::)|[^(]* (std|__gnu_cxx)::|lbkit::[^(]* std::)'; then
  echo "FAIL: weak symbols above are neither lbkit's nor the standard library's"; fail=1
fi

# The public API is there: every function the headers declare, and the
# typeinfo of every class a user subclasses or meets through RTTI.
for f in 'lbkit::CreateChannel(' 'lbkit::ToString(' 'lbkit::MakeDnsResolverFactory(' \
         'lbkit::EndpointKey(' 'lbkit::MakeEtcdResolverFactory(' 'lbkit::FindBalancer(' \
         'lbkit::RegisteredBalancers()' 'lbkit::RegisterBalancer(' 'lbkit::ParseTarget(' \
         'lbkit::FindResolverFactory(' 'lbkit::RegisteredResolverSchemes()' \
         'lbkit::RegisterResolverFactory(' 'lbkit::SerializeLoadReport(' \
         'lbkit::AddLoadReportTrailer(' 'lbkit::ParseServiceConfig(' \
         'lbkit::ParseLoadBalancingConfig(' 'lbkit::Version()' 'lbkit::ManualResolver::Create()' \
         'lbkit::EtcdRegistrar::Create(' 'lbkit::ChildBalancer::Create(' \
         'lbkit::ForwardingSubchannel::ForwardingSubchannel(' 'lbkit::EndpointSharding::Update(' \
         'lbkit::CallDoneInfo::CallDoneInfo(' 'lbkit::testing::BuildBalancer(' \
         'lbkit::testing::Describe(' 'lbkit::testing::PickAddresses(' \
         'lbkit::testing::FakeHelper::FakeHelper(' \
         'typeinfo for lbkit::Subchannel' 'typeinfo for lbkit::ForwardingSubchannel' \
         'typeinfo for lbkit::Helper' 'typeinfo for lbkit::Timer' 'typeinfo for lbkit::Balancer' \
         'typeinfo for lbkit::BalancerBuilder' 'typeinfo for lbkit::BalancerConfig' \
         'typeinfo for lbkit::ChildBalancer' 'typeinfo for lbkit::Picker' \
         'typeinfo for lbkit::Resolver' 'typeinfo for lbkit::ResolverFactory' \
         'typeinfo for lbkit::ResolverListener' 'typeinfo for lbkit::ManualResolver' \
         'typeinfo for lbkit::Channel' 'typeinfo for lbkit::EtcdRegistrar' \
         'typeinfo for lbkit::testing::FakeHelper' 'typeinfo for lbkit::testing::FakeSubchannel'; do
  if ! grep -qF "$f" "$syms"; then echo "FAIL: $f is not exported"; fail=1; fi
done

# Every function and class the headers mark LBKIT_EXPORT is in that list or
# exported anyway: a new public name must not be forgotten here silently.
for name in $(grep -rhoE 'LBKIT_EXPORT [A-Za-z_:<>, ]*[ *&]([A-Z][A-Za-z]*)\(' \
                "$source_dir/include/lbkit" | sed -E 's/.*[ *&]([A-Za-z]+)\($/\1/' | sort -u); do
  grep -qE "lbkit::(testing::)?$name\(" "$syms" || { echo "FAIL: function $name is not exported"; fail=1; }
done

[ "$fail" -eq 0 ] && echo "liblbkit.so exports $(wc -l <"$syms") symbols, the public API only: OK"
exit "$fail"
