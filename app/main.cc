#include <cstdio>
int main() { std::puts("socialpulse: under construction"); return 0; }
