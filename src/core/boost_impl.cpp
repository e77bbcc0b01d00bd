// The one translation unit that compiles Boost.Asio, Boost.Beast, Boost.JSON
// and Boost.URL (separate compilation): every other file includes only their
// declarations, which keeps a clean build on 2 cores short.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>
